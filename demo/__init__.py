"""The demo world (its own distribution): services, simulated controllers, computes."""

from backends import import_kombu_whole

import_kombu_whole()
