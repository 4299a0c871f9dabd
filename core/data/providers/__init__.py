"""Market-data providers: download bars from public exchange endpoints into the CSVs Ploutos loads."""
