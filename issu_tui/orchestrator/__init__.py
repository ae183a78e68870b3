"""The executor that drives an ISSU from plan to done, with its state in the journal.

Start with phases.py (the registry of phases and intents), then executor.py (how intents
and phases are run), finalize.py and abort.py (their named steps). Every step is idempotent
and resumable: the executor reconciles the journal with the world (probing computes,
checking run-sync) before acting.

Nothing is imported here: the journal imports phases.py, and the rest imports the journal.
"""
