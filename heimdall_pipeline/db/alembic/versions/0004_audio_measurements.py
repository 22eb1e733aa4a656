"""measurements of audio captures (OpenWebRX): capture_signal, S-meter and audio levels

Audio captures are measured into the same table: what was captured, the S-meter level, the audio
level (relative, after AGC) and the tone's audio frequency; existing rows are IQ. The power-figures
rule gains the audio case.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# frozen copies of the rule before and after (db/models.py holds the current one)
POWER_FIGURES_RULE_IQ = (
    "(power_unit = 'dBm' AND noise_power_dbm IS NOT NULL AND psd_dbm_hz IS NOT NULL AND signal_power_dbfs IS NULL AND noise_power_dbfs IS NULL AND calibration_offset_db IS NULL) OR (power_unit = 'dBFS' AND noise_power_dbfs IS NOT NULL AND ((calibration_offset_db IS NULL AND signal_power_dbm IS NULL AND noise_power_dbm IS NULL AND psd_dbm_hz IS NULL) OR (calibration_offset_db IS NOT NULL AND noise_power_dbm IS NOT NULL AND psd_dbm_hz IS NOT NULL)))"
)
POWER_FIGURES_RULE = (
    "(capture_signal = 'iq' AND ((power_unit = 'dBm' AND noise_power_dbm IS NOT NULL AND psd_dbm_hz IS NOT NULL AND signal_power_dbfs IS NULL AND noise_power_dbfs IS NULL AND calibration_offset_db IS NULL) OR (power_unit = 'dBFS' AND noise_power_dbfs IS NOT NULL AND ((calibration_offset_db IS NULL AND signal_power_dbm IS NULL AND noise_power_dbm IS NULL AND psd_dbm_hz IS NULL) OR (calibration_offset_db IS NOT NULL AND noise_power_dbm IS NOT NULL AND psd_dbm_hz IS NOT NULL))))) OR (capture_signal = 'audio' AND power_unit = 'dBFS' AND signal_power_dbm IS NULL AND noise_power_dbm IS NULL AND psd_dbm_hz IS NULL AND calibration_offset_db IS NULL)"
)


def upgrade() -> None:
    op.execute("ALTER TABLE measurements ADD COLUMN capture_signal text NOT NULL DEFAULT 'iq'")
    op.execute("ALTER TABLE measurements ADD COLUMN smeter_dbfs double precision")
    op.execute("ALTER TABLE measurements ADD COLUMN audio_level_dbfs double precision")
    op.execute("ALTER TABLE measurements ADD COLUMN audio_frequency_hz double precision")
    op.execute("ALTER TABLE measurements ADD CONSTRAINT measurements_capture_signal "
               "CHECK (capture_signal IN ('iq', 'audio'))")
    op.execute("ALTER TABLE measurements DROP CONSTRAINT measurements_power_figures_match_unit")
    op.execute(f"ALTER TABLE measurements ADD CONSTRAINT measurements_power_figures_match_unit "
               f"CHECK ({POWER_FIGURES_RULE})")


def downgrade() -> None:
    op.execute("DELETE FROM measurements WHERE capture_signal = 'audio'")
    op.execute("ALTER TABLE measurements DROP CONSTRAINT measurements_power_figures_match_unit")
    op.execute(f"ALTER TABLE measurements ADD CONSTRAINT measurements_power_figures_match_unit "
               f"CHECK ({POWER_FIGURES_RULE_IQ})")
    op.execute("ALTER TABLE measurements DROP CONSTRAINT measurements_capture_signal")
    for column in ("audio_frequency_hz", "audio_level_dbfs", "smeter_dbfs", "capture_signal"):
        op.execute(f"ALTER TABLE measurements DROP COLUMN {column}")
