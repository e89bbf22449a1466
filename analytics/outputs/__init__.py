"""What leaves the warehouse: tables for researchers (`export`, `codebook`), the dashboard's
download files (`downloads`) and the command line (`cli`, i.e. `python -m analytics`)."""
