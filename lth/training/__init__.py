"""The training loop and what it trains: the fit, the masked network, the architectures, the devices."""
