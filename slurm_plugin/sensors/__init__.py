"""Sensors: one module per data source behind one face (`base.Sensor`), each returning raw readings
with a per-channel status; `registry.NODE_SENSORS` lists them for `jobcarbon doctor`."""
