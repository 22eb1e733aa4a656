#!/bin/bash
# First start of the timescaledb container only (docker-entrypoint-initdb.d): the Heimdall role,
# its metrics database with the TimescaleDB extension, and the Dagster instance database.
# The extension is created here by the superuser so the Heimdall role needs no superuser rights.
set -euo pipefail

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
     -v user="$HEIMDALL_DB_USER" -v password="$HEIMDALL_DB_PASSWORD" \
     -v heimdall_db="$HEIMDALL_DB_NAME" -v dagster_db="$DAGSTER_DB_NAME" <<'SQL'
CREATE ROLE :"user" LOGIN PASSWORD :'password';
CREATE DATABASE :"heimdall_db" OWNER :"user";
CREATE DATABASE :"dagster_db" OWNER :"user";
SQL

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$HEIMDALL_DB_NAME" <<'SQL'
CREATE EXTENSION IF NOT EXISTS timescaledb;
SQL
