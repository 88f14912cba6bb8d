"""The application: settings, wiring a run to the vendor API and the database, the scheduled worker."""
