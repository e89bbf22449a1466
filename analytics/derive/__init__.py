"""The derive step: what a load computes from the base tables, once per data version, on the
writer's connection before the new warehouse file is swapped in (`materialise.refresh`: result
tables, day facts and rollups). `python -m analytics refresh` runs it again explicitly."""
