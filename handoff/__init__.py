"""handoff: an event-sourced engine for handing work between AI agents with its context intact."""

__version__ = "0.1.0"
