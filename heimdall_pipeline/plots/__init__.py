"""Pictures for people (matplotlib, imported when a picture is drawn): `spectrum` (a capture's PSD
and waterfall), `localization` (the RSS and TDoA estimates on a map)."""
