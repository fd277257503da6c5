"""USB-PD charging of a home's phones, one concern per module: the hardware opener
(`hardware`), the hub and meters as they come and go (`bus`), each port's phone and power
(`attach`), purchases (`purchase`), the running session (`watch`), its end and settlement
(`settlement`), wallets (`wallets`), readings (`readings`), signing (`signing`), the views
(`views`), and `UsbCharging` (`charging`), which wires them."""

from edge_controller.usb.charging.charging import UsbCharging
from edge_controller.usb.charging.hardware import HardwareOpener, UsbHardware, open_hardware
from edge_controller.usb.charging.port import PortState
from edge_controller.usb.charging.settings import UsbSettings

__all__ = [
    "HardwareOpener",
    "PortState",
    "UsbCharging",
    "UsbHardware",
    "UsbSettings",
    "open_hardware",
]
