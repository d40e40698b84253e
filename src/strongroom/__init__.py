"""strongroom: backup for virtual machines and files over one deduplicated, encrypted vault."""

__version__ = "0.1.0"
