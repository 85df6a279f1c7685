"""Health&Med scheduling engine: domain and state, no HTTP.

Usable from a plain asyncio script: build an :class:`engine.runtime.Engine` from
:func:`engine.config.load_settings` and call its services.
"""
