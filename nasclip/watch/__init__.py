"""Watching the shares: inotify, mount health, events, scan scheduling, the reconcile scanner."""
