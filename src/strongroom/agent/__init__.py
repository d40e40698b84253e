"""The agent (``strongroom agent``): registers a machine with a server, pulls its jobs by long
polling (no port open on the machine), runs them with the engines and reports back."""
