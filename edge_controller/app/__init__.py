"""The app: the parts of one home's edge controller and their assembly.

- `node`: the home as a ledger node (sign, submit, receive, sync, seal);
- `trading`: the market's decisions made into signed records;
- `delivery`: trades held in the ledger made into setpoints, meter readings, settlements;
- `site`: the home's devices, each with its role's behaviour;
- `actions`: what the owner does through the API;
- `queries` and `views`: what the API and the WebSocket show;
- `events`: the event bus and what the ledger's changes announce;
- `ordering`: neighbours' records ahead of a gap in their signer's sequence wait for it;
- `refused`: our records refused after the API acknowledged them;
- `spending`: what the home has committed to spend, against the owner's limits;
- `home`: the assembly (`Home`).
"""
