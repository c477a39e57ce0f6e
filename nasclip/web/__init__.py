"""The web front end: a page and a JSON API inside nasclipd (docs/web.md)."""
