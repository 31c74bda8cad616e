_instruments = ("django >= 4.2",)
