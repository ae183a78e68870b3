pytest_plugins = ["tests.services_plugin"]
