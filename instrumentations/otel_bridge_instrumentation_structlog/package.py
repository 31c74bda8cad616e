_instruments = ("structlog >= 24.1",)
