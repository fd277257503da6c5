"""The demo: simulated homes trading, alone or inside a real Home Assistant.

- `embedded`: `energy-p2p-edge demo` (`scripts/demo --without-hass`): one process with an
  embedded MQTT broker, a registrar and the homes `simulation.plan` plans, each with its
  simulated world;
- `home`: one demo home as its own process (the `processes` layout);
- `layouts`: the community as `scripts/demo` starts it, embedded or one process per home;
- `community`: the community's genesis and keys kept in a folder, and the registrar's
  records, so a restart carries on;
- `phones`: the demo's phones, plugged in over the simulation control topics, paired and
  charged as an owner would;
- `hass`, `hass_client`: a real Home Assistant set up as a person would;
- `__main__`: `python -m edge_controller.demo`, the showcase `scripts/demo` runs.

Child processes are started with `edge_controller.processes`, as the benchmarks start theirs.
Only this package and `edge_controller.simulation` import the simulation.
"""
