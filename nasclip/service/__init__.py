"""The daemon: wiring the parts together, health, status, reload, systemd notify, logs."""
