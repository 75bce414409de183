"""The machine being measured: its identity (results are kept per host), its memory bandwidth,
and its vitals (temperature, frequency, swap)."""
