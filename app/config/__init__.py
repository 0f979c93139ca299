"""Settings: the one ``Settings`` class, and the page it writes (docs/configuration.md)."""
