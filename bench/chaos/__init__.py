"""`make chaos`: whole upgrades of a demo world under load with random faults, each checked by
an independent checker (docs/chaos.md)."""
