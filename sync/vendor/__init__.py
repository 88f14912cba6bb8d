"""The vendor API: signed requests, the transport under them, and the validation of every answer."""
