"""Hypothesis profiles of the fuzz tests.

`ci` (the default, inside `make test`): few examples per property, derandomized, so every run
tries the same inputs and a failure reproduces on any machine. `deep` (`make fuzz`): many
examples (ISSU_FUZZ_EXAMPLES, default 10000), random, failures kept in .hypothesis/ so the
next run tries them first. Select with ISSU_FUZZ_PROFILE=deep.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, Phase, settings

_SLOW_IS_FINE = [HealthCheck.too_slow, HealthCheck.data_too_large,
                 HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much]

settings.register_profile(
    "ci", max_examples=int(os.environ.get("ISSU_FUZZ_EXAMPLES", "60")), deadline=None,
    derandomize=True, database=None, suppress_health_check=_SLOW_IS_FINE,
    phases=[Phase.explicit, Phase.generate, Phase.shrink], print_blob=True)
settings.register_profile(
    "deep", max_examples=int(os.environ.get("ISSU_FUZZ_EXAMPLES", "10000")), deadline=None,
    suppress_health_check=_SLOW_IS_FINE, print_blob=True)
settings.load_profile(os.environ.get("ISSU_FUZZ_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _no_name_lookups(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fuzzed configs name random hosts; resolving them would send DNS queries off the box.
    Addresses and localhost resolve as usual, any other name is unknown."""
    real = socket.getaddrinfo

    def loopback_only(host: object, *args: object, **kwargs: object) -> object:
        name = host.decode(errors="replace") if isinstance(host, bytes) else host
        if name is None or name == "localhost" or "\x00" in str(name):
            return real(host, *args, **kwargs)  # the last: refused before any lookup
        try:
            ipaddress.ip_address(str(name))
        except ValueError:
            str(name).encode("idna")  # what the real lookup refuses before asking (UnicodeError)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known") from None
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", loopback_only)
    yield
