"""USB-PD charging: hub port power, USB meters, and the virtual USB world for tests."""
