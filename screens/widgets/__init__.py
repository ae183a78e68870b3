"""The console's widgets: panes of the dashboard, reused by the zoomed screens."""
