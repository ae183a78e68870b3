"""Simulated compute nodes: a directory per host, a host-side command run over SSH
(`python -m demo.compute.host`), and one daemon (`python -m demo.compute.hostd`) that runs
every host's vrouter-agent and data path, like containers sharing one kernel.
"""
