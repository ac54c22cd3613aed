"""Team project folders: shared folders whose access is granted per user or group."""
