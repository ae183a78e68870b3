"""The demo world's containers: images built from Debian's packages (debootstrap, no
registry), a docker-compatible command over podman, and the vrouter-agent that runs inside."""
