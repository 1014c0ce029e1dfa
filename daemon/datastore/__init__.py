"""The qi2lab DataStore: reads and writes the on-disk layout of the spec."""
