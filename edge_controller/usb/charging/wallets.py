"""The phones' wallets: keys this edge controller keeps for them, one per paired phone,
and which wallet pays for a purchase."""

from __future__ import annotations

from pathlib import Path

from edge_controller.devices import Clock
from edge_controller.ledger import KeyPair
from edge_controller.refusal import Refusal, Why
from edge_controller.usb.charging.signing import Signer
from edge_controller.usb.store import Binding, UsbStore
from edge_controller.usb.types import UsbIdentity


class Wallets:
    """The wallet keys in `folder` (one `<account>.key` each) and the phones bound to them."""

    def __init__(self, *, folder: Path, store: UsbStore, signer: Signer, clock: Clock) -> None:
        self._folder = folder
        self._store = store
        self._signer = signer
        self._clock = clock
        self._keys: dict[str, KeyPair] = {}

    def load(self) -> None:
        """Read the kept keys (the folder is made when missing)."""
        self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        for path in sorted(self._folder.glob("*.key")):
            key = KeyPair.load(path)
            self._keys[key.account] = key

    async def pair(self, device: UsbIdentity, fund: int | None) -> KeyPair:
        """Bind the phone to a new wallet kept here, funded with `fund` milli-units from
        the home's account; raises Refusal when the transfer is refused."""
        key = KeyPair.generate()
        if fund:
            await self._signer.sign("transfer", to=key.account, amount=fund)
        key.save(self._folder / f"{key.account}.key")
        self._keys[key.account] = key
        self._store.bind(
            Binding(
                phone=device.key,
                wallet=key.account,
                vendor_id=device.vendor_id,
                product_id=device.product_id,
                serial=device.serial,
                manufacturer=device.manufacturer,
                product=device.product,
                bound_at=self._clock.now_ms(),
            )
        )
        return key

    def payer(self, device: UsbIdentity, wallet: str | None, pairing_code: str | None) -> KeyPair:
        """The wallet that pays for a purchase: `wallet` when given (one kept here), else
        the phone's own; raises Refusal when there is none to use."""
        if wallet is not None:
            key = self._keys.get(wallet)
            if key is None:
                raise Refusal("invalid_field", f"wallet {wallet} is not kept here", Why.INVALID)
            return key
        binding = self._store.binding(device.key)
        if binding is None:
            raise Refusal(
                "not_paired",
                f"phone {device.key} is not paired; pair it with code {pairing_code}",
                details={"pairing_code": pairing_code},
            )
        key = self._keys.get(binding.wallet)
        if key is None:
            raise Refusal("wallet_missing", f"the key of wallet {binding.wallet} is missing")
        return key
