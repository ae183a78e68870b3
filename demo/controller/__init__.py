"""Simulated Contrail controller (api-server, analytics-api, control node) for the demo world."""
