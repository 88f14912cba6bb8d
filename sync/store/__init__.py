"""The database: schema, engines, the run lock, migrations, writing results and reading reports."""
