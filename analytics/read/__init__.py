"""The dashboard's read layer: the filter model and the queries behind each figure, over a
cursor passed in, reading the derived tables of the data version the request sees."""
