--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

--
-- Name: heimdall_set_updated_at(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.heimdall_set_updated_at() RETURNS trigger
    LANGUAGE plpgsql
    AS $$
        BEGIN
            NEW.updated_at := now();
            RETURN NEW;
        END
        $$;


SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: localizations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.localizations (
    "time" timestamp with time zone NOT NULL,
    session_key text NOT NULL,
    localizable boolean NOT NULL,
    reason text,
    latitude double precision,
    longitude double precision,
    eirp_dbm double precision,
    path_loss_exponent double precision,
    ellipse_semi_major_km double precision,
    ellipse_semi_minor_km double precision,
    ellipse_orientation_deg double precision,
    receivers_used text[] DEFAULT '{}'::text[] NOT NULL,
    residuals jsonb,
    metadata_json jsonb DEFAULT '{}'::jsonb NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    method text DEFAULT 'rss'::text NOT NULL,
    pair_lags jsonb,
    CONSTRAINT localizations_method CHECK ((method = ANY (ARRAY['rss'::text, 'tdoa'::text])))
);


--
-- Name: measurements; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.measurements (
    "time" timestamp with time zone NOT NULL,
    session_key text NOT NULL,
    receiver_id text NOT NULL,
    frequency_mhz double precision NOT NULL,
    sample_rate_khz double precision NOT NULL,
    samples_count bigint NOT NULL,
    snr_db double precision,
    psd_dbm_hz double precision,
    frequency_offset_hz double precision,
    signal_power_dbm double precision,
    noise_power_dbm double precision,
    signal_detected boolean DEFAULT false NOT NULL,
    iq_data_path text,
    metadata_json jsonb DEFAULT '{}'::jsonb NOT NULL,
    computed_at timestamp with time zone DEFAULT now() NOT NULL,
    power_unit text DEFAULT 'dBm'::text NOT NULL,
    signal_power_dbfs double precision,
    noise_power_dbfs double precision,
    calibration_offset_db double precision,
    calibration_spread_db double precision,
    measured_sample_rate_hz double precision,
    sample_rate_spread_hz double precision,
    timing_rms_ns double precision,
    core_datetime text,
    CONSTRAINT measurements_power_figures_match_unit CHECK ((((power_unit = 'dBm'::text) AND (noise_power_dbm IS NOT NULL) AND (psd_dbm_hz IS NOT NULL) AND (signal_power_dbfs IS NULL) AND (noise_power_dbfs IS NULL) AND (calibration_offset_db IS NULL)) OR ((power_unit = 'dBFS'::text) AND (noise_power_dbfs IS NOT NULL) AND (((calibration_offset_db IS NULL) AND (signal_power_dbm IS NULL) AND (noise_power_dbm IS NULL) AND (psd_dbm_hz IS NULL)) OR ((calibration_offset_db IS NOT NULL) AND (noise_power_dbm IS NOT NULL) AND (psd_dbm_hz IS NOT NULL)))))),
    CONSTRAINT measurements_power_unit CHECK ((power_unit = ANY (ARRAY['dBm'::text, 'dBFS'::text])))
);


--
-- Name: schema_migrations; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.schema_migrations (
    version integer NOT NULL,
    name text DEFAULT ''::text NOT NULL,
    applied_at timestamp with time zone DEFAULT now() NOT NULL
);


--
-- Name: session_captures; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.session_captures (
    session_key text NOT NULL,
    receiver_id text NOT NULL,
    status text NOT NULL,
    error_type text,
    error_message text,
    attempts integer DEFAULT 0 NOT NULL,
    bytes bigint,
    sha256 text,
    start_time timestamp with time zone,
    end_time timestamp with time zone,
    run_id text,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT session_captures_status CHECK ((status = ANY (ARRAY['stored'::text, 'failed'::text, 'not_requested'::text]))),
    CONSTRAINT session_captures_stored_has_object CHECK (((status <> 'stored'::text) OR ((bytes IS NOT NULL) AND (sha256 IS NOT NULL))))
);


--
-- Name: sessions; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.sessions (
    id bigint NOT NULL,
    session_key text NOT NULL,
    center_frequency_hz double precision NOT NULL,
    duration_s double precision NOT NULL,
    sample_rate_hz double precision NOT NULL,
    receiver_ids text[] DEFAULT '{}'::text[] NOT NULL,
    source_kind text NOT NULL,
    transmitter jsonb,
    requested_at timestamp with time zone DEFAULT now() NOT NULL,
    scheduled_for timestamp with time zone DEFAULT now() NOT NULL,
    status text DEFAULT 'requested'::text NOT NULL,
    requested_by text DEFAULT 'unknown'::text NOT NULL,
    launched_at timestamp with time zone,
    run_id text,
    archived_at timestamp with time zone,
    archived_from_status text,
    status_reason text,
    recordings jsonb,
    CONSTRAINT sessions_duration_positive CHECK ((duration_s > (0)::double precision)),
    CONSTRAINT sessions_sample_rate_positive CHECK ((sample_rate_hz > (0)::double precision)),
    CONSTRAINT sessions_status CHECK ((status = ANY (ARRAY['requested'::text, 'launched'::text, 'succeeded'::text, 'failed'::text, 'archived'::text])))
);


--
-- Name: sessions_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

ALTER TABLE public.sessions ALTER COLUMN id ADD GENERATED ALWAYS AS IDENTITY (
    SEQUENCE NAME public.sessions_id_seq
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1
);


--
-- Name: websdrs; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.websdrs (
    id text NOT NULL,
    name text NOT NULL,
    url text NOT NULL,
    kind text NOT NULL,
    location_name text DEFAULT ''::text NOT NULL,
    latitude double precision NOT NULL,
    longitude double precision NOT NULL,
    altitude_m double precision DEFAULT 0 NOT NULL,
    is_active boolean DEFAULT true NOT NULL,
    timeout_seconds double precision DEFAULT 30 NOT NULL,
    retry_count integer DEFAULT 3 NOT NULL,
    max_channels integer DEFAULT 4 NOT NULL,
    min_frequency_hz double precision DEFAULT 0 NOT NULL,
    max_frequency_hz double precision,
    created_at timestamp with time zone DEFAULT now() NOT NULL,
    updated_at timestamp with time zone DEFAULT now() NOT NULL,
    CONSTRAINT websdrs_altitude_range CHECK (((altitude_m >= ('-500'::integer)::double precision) AND (altitude_m <= (10000)::double precision))),
    CONSTRAINT websdrs_frequency_range CHECK (((max_frequency_hz IS NULL) OR (max_frequency_hz > min_frequency_hz))),
    CONSTRAINT websdrs_id_slug CHECK ((id ~ '^[a-z0-9][a-z0-9_-]{0,39}$'::text)),
    CONSTRAINT websdrs_latitude_range CHECK (((latitude >= ('-90'::integer)::double precision) AND (latitude <= (90)::double precision))),
    CONSTRAINT websdrs_longitude_range CHECK (((longitude >= ('-180'::integer)::double precision) AND (longitude <= (180)::double precision))),
    CONSTRAINT websdrs_max_channels_min CHECK ((max_channels >= 1)),
    CONSTRAINT websdrs_min_frequency_nonnegative CHECK ((min_frequency_hz >= (0)::double precision)),
    CONSTRAINT websdrs_name_length CHECK (((char_length(name) >= 1) AND (char_length(name) <= 200))),
    CONSTRAINT websdrs_retry_count_range CHECK (((retry_count >= 0) AND (retry_count <= 10))),
    CONSTRAINT websdrs_timeout_positive CHECK ((timeout_seconds > (0)::double precision))
);


--
-- Data for Name: localizations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.localizations ("time", session_key, localizable, reason, latitude, longitude, eirp_dbm, path_loss_exponent, ellipse_semi_major_km, ellipse_semi_minor_km, ellipse_orientation_deg, receivers_used, residuals, metadata_json, computed_at, method, pair_lags) VALUES ('2026-12-05 05:21:57.056532+00', 'legacy1', false, 'not localizable by TDoA: the signal''s rms bandwidth is 3.5 Hz (< 10 Hz): a (nearly) pure carrier has no time structure to cross-correlate', NULL, NULL, NULL, NULL, NULL, NULL, NULL, '{}', NULL, '{"truth": {"latitude": 48.686728, "longitude": 5.947191}, "band_hz": null, "window_s": 0.5, "receivers": [{"used": false, "timed": true, "latitude": 48.8, "longitude": 8.2, "receiver_id": "dk0ghz", "core_datetime": "2026-12-05T05:21:57.056531983Z", "timing_rms_ns": 95.0883038571512, "sample_rate_hz": 12000.014857540627, "sample_rate_spread_hz": 0.0}, {"used": false, "timed": true, "latitude": 52.5, "longitude": -2.4, "receiver_id": "g0mjw", "core_datetime": "2026-12-05T05:21:57.056531975Z", "timing_rms_ns": 80.8988387315604, "sample_rate_hz": 12001.199708744633, "sample_rate_spread_hz": 0.0}, {"used": false, "timed": true, "latitude": 47.3, "longitude": 8.5, "receiver_id": "hb9q", "core_datetime": "2026-12-05T05:21:57.056531979Z", "timing_rms_ns": 93.98011894086517, "sample_rate_hz": 12000.12109565135, "sample_rate_spread_hz": 0.0}, {"used": false, "timed": true, "latitude": 48.2, "longitude": 16.3, "receiver_id": "oe3xec", "core_datetime": "2026-12-05T05:21:57.056531828Z", "timing_rms_ns": 93.59743575943385, "sample_rate_hz": 11999.808879958484, "sample_rate_spread_hz": 0.0}, {"used": false, "timed": true, "latitude": 52.5, "longitude": 4.8, "receiver_id": "ph0m", "core_datetime": "2026-12-05T05:21:57.056531986Z", "timing_rms_ns": 93.34645856198752, "sample_rate_hz": 12000.66066891376, "sample_rate_spread_hz": 0.0}, {"used": false, "timed": true, "latitude": 43.5, "longitude": 1.4, "receiver_id": "f5len", "core_datetime": "2026-12-05T05:21:57.056532033Z", "timing_rms_ns": 93.55908213610057, "sample_rate_hz": 12000.866980214887, "sample_rate_spread_hz": 0.0}, {"used": false, "timed": true, "latitude": 47.4, "longitude": 9.1, "receiver_id": "hb9sl", "core_datetime": "2026-12-05T05:21:57.056532032Z", "timing_rms_ns": 77.55463466876486, "sample_rate_hz": 12000.485184595116, "sample_rate_spread_hz": 0.0}], "region_95": null, "common_span_s": 1.997, "sample_rate_hz": 12000.0, "frequency_offsets_hz": null}', '2026-12-05 05:22:23.184819+00', 'tdoa', NULL);
INSERT INTO public.localizations ("time", session_key, localizable, reason, latitude, longitude, eirp_dbm, path_loss_exponent, ellipse_semi_major_km, ellipse_semi_minor_km, ellipse_orientation_deg, receivers_used, residuals, metadata_json, computed_at, method, pair_lags) VALUES ('2026-12-05 05:21:57.056532+00', 'legacy1', true, NULL, 48.687086861519546, 5.9487177076995295, 21.347222539534254, 2.797928936483097, 38.34979434595769, 27.958640649908325, 69.61310532891105, '{dk0ghz,g0mjw,hb9q,oe3xec,ph0m,f5len,hb9sl}', '{"hb9q": -0.00010611001700056022, "ph0m": -0.002211985908431302, "f5len": -0.00227303486524022, "g0mjw": 0.0047101214148739246, "hb9sl": 0.0012020186560164348, "dk0ghz": 0.00012353817184163063, "oe3xec": -0.0014443861250441614}', '{"transmitter_truth": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "offset_hz": -1544.1, "altitude_m": 10.0, "modulation": "carrier", "shadowing_sigma_db": 0.0}, "receivers_as_bounds": []}', '2026-12-05 05:22:23.198178+00', 'rss', NULL);


--
-- Data for Name: measurements; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.measurements ("time", session_key, receiver_id, frequency_mhz, sample_rate_khz, samples_count, snr_db, psd_dbm_hz, frequency_offset_hz, signal_power_dbm, noise_power_dbm, signal_detected, iq_data_path, metadata_json, computed_at, power_unit, signal_power_dbfs, noise_power_dbfs, calibration_offset_db, calibration_spread_db, measured_sample_rate_hz, sample_rate_spread_hz, timing_rms_ns, core_datetime) VALUES ('2026-12-05 05:21:57.056531+00', 'legacy1', 'g0mjw', 7.1, 12, 24000, 13.746505595959562, -120.6338372704854, -1546.124143388659, -108.15773405335877, -121.90423964931833, true, 's3://heimdall-raw-iq/sessions/legacy1/websdr_g0mjw.npy', '{"timing": {"fresh_fixes": 24, "leap_seconds": 18, "core_datetime": "2026-12-05T05:21:57.056531975Z", "max_fix_gap_s": 1.023897635087798, "timing_rms_ns": 80.8988387315604, "rejected_fixes": 0, "sample_rate_hz": 12001.199708744633, "sample_rate_spread_hz": 0.0, "nominal_sample_rate_hz": 12000.0, "stale_or_missing_frames": 23}, "metrics": {"snr_db": 13.746505595959562, "nperseg": 1024, "n_samples": 24000, "detection_z": 61012.449444301994, "bandwidth_hz": 58.59375, "noise_power_db": -121.90423964931833, "psd_peak_db_hz": -120.6338372704854, "sample_rate_hz": 12000.0, "signal_detected": true, "signal_power_db": -108.15773405335877, "estimated_snr_db": 13.746505595959562, "noise_floor_db_hz": -162.69605210979455, "frequency_offset_hz": -1546.124143388659, "psd_peak_frequency_hz": -1546.875}, "calibration": null, "source_kind": "simulated", "ground_truth": {"snr_db": 13.763394189199133, "distance_km": 725.1929682593025, "transmitter": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "altitude_m": 10.0, "modulation": "carrier", "frequency_hz": 7098455.9}, "lo_error_ppm": 0.2840037560790225, "path_loss_db": 129.56597813361813, "shadowing_db": 0.0, "gnss_jitter_ns": 100.0, "sample0_gps_ns": 1480483335056532000, "signal_in_band": true, "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth", "noise_figure_db": 11.27881521670649, "noise_power_dbm": -121.92937232281726, "signal_power_dbm": -108.16597813361813, "frequency_offset_hz": -1546.1164266677886, "propagation_delay_s": 0.0024189833630147645, "true_sample_rate_hz": 12001.199903212451, "sample_rate_error_ppm": 99.99193437096415}, "metrics_power_unit": "dBm"}', '2026-12-05 05:22:22.242869+00', 'dBm', NULL, NULL, NULL, NULL, 12001.199708744633, 0, 80.8988387315604, '2026-12-05T05:21:57.056531975Z');
INSERT INTO public.measurements ("time", session_key, receiver_id, frequency_mhz, sample_rate_khz, samples_count, snr_db, psd_dbm_hz, frequency_offset_hz, signal_power_dbm, noise_power_dbm, signal_detected, iq_data_path, metadata_json, computed_at, power_unit, signal_power_dbfs, noise_power_dbfs, calibration_offset_db, calibration_spread_db, measured_sample_rate_hz, sample_rate_spread_hz, timing_rms_ns, core_datetime) VALUES ('2026-12-05 05:21:57.056531+00', 'legacy1', 'dk0ghz', 7.1, 12, 24000, 32.281026046581324, -102.68240705358741, -1546.1666742108819, -90.21183546186458, -122.49286150844591, true, 's3://heimdall-raw-iq/sessions/legacy1/websdr_dk0ghz.npy', '{"timing": {"fresh_fixes": 23, "leap_seconds": 18, "core_datetime": "2026-12-05T05:21:57.056531983Z", "max_fix_gap_s": 0.04266661383992095, "timing_rms_ns": 95.0883038571512, "rejected_fixes": 0, "sample_rate_hz": 12000.014857540627, "sample_rate_spread_hz": 0.0, "nominal_sample_rate_hz": 12000.0, "stale_or_missing_frames": 24}, "metrics": {"snr_db": 32.281026046581324, "nperseg": 1024, "n_samples": 24000, "detection_z": 3622597.5113427783, "bandwidth_hz": 105.46875, "noise_power_db": -122.49286150844591, "psd_peak_db_hz": -102.68240705358741, "sample_rate_hz": 12000.0, "signal_detected": true, "signal_power_db": -90.21183546186458, "estimated_snr_db": 32.281026046581324, "noise_floor_db_hz": -163.28467396892216, "frequency_offset_hz": -1546.1666742108819, "psd_peak_frequency_hz": -1546.875}, "calibration": null, "source_kind": "simulated", "ground_truth": {"snr_db": 32.23953335075247, "distance_km": 165.66452977590228, "transmitter": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "altitude_m": 10.0, "modulation": "carrier", "frequency_hz": 7098455.9}, "lo_error_ppm": 0.289974208505998, "path_loss_db": 111.6117046710142, "shadowing_db": 0.0, "gnss_jitter_ns": 100.0, "sample0_gps_ns": 1480483335056532000, "signal_in_band": true, "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth", "noise_figure_db": 10.75694951775709, "noise_power_dbm": -122.45123802176666, "signal_power_dbm": -90.21170467101419, "frequency_offset_hz": -1546.1588168800201, "propagation_delay_s": 0.0005525973898112617, "true_sample_rate_hz": 12000.015005013158, "sample_rate_error_ppm": 1.2504177630138287}, "metrics_power_unit": "dBm"}', '2026-12-05 05:22:22.242869+00', 'dBm', NULL, NULL, NULL, NULL, 12000.014857540627, 0, 95.0883038571512, '2026-12-05T05:21:57.056531983Z');
INSERT INTO public.measurements ("time", session_key, receiver_id, frequency_mhz, sample_rate_khz, samples_count, snr_db, psd_dbm_hz, frequency_offset_hz, signal_power_dbm, noise_power_dbm, signal_detected, iq_data_path, metadata_json, computed_at, power_unit, signal_power_dbfs, noise_power_dbfs, calibration_offset_db, calibration_spread_db, measured_sample_rate_hz, sample_rate_spread_hz, timing_rms_ns, core_datetime) VALUES ('2026-12-05 05:21:57.056531+00', 'legacy1', 'ph0m', 7.1, 12, 24000, 21.449183577369666, -115.00629241173465, -1542.7554102911345, -101.85915855610696, -123.30834213347664, true, 's3://heimdall-raw-iq/sessions/legacy1/websdr_ph0m.npy', '{"timing": {"fresh_fixes": 23, "leap_seconds": 18, "core_datetime": "2026-12-05T05:21:57.056531986Z", "max_fix_gap_s": 1.0666079437740315, "timing_rms_ns": 93.34645856198752, "rejected_fixes": 0, "sample_rate_hz": 12000.66066891376, "sample_rate_spread_hz": 0.0, "nominal_sample_rate_hz": 12000.0, "stale_or_missing_frames": 24}, "metrics": {"snr_db": 21.449183577369666, "nperseg": 1024, "n_samples": 24000, "detection_z": 288232.8631605368, "bandwidth_hz": 117.1875, "noise_power_db": -123.30834213347664, "psd_peak_db_hz": -115.00629241173465, "sample_rate_hz": 12000.0, "signal_detected": true, "signal_power_db": -101.85915855610696, "estimated_snr_db": 21.449183577369666, "noise_floor_db_hz": -164.10015459395288, "frequency_offset_hz": -1542.7554102911345, "psd_peak_frequency_hz": -1546.875}, "calibration": null, "source_kind": "simulated", "ground_truth": {"snr_db": 21.44000175324676, "distance_km": 431.6651013706888, "transmitter": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "altitude_m": 10.0, "modulation": "carrier", "frequency_hz": 7098455.9}, "lo_error_ppm": -0.18927145857173922, "path_loss_db": 123.25739205980813, "shadowing_db": 0.0, "gnss_jitter_ns": 100.0, "sample0_gps_ns": 1480483335056532000, "signal_in_band": true, "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth", "noise_figure_db": 9.91079372646887, "noise_power_dbm": -123.29739381305488, "signal_power_dbm": -101.85739205980812, "frequency_offset_hz": -1542.7561726437682, "propagation_delay_s": 0.001439879789673324, "true_sample_rate_hz": 12000.660885018726, "sample_rate_error_ppm": 55.07375156060519}, "metrics_power_unit": "dBm"}', '2026-12-05 05:22:22.242869+00', 'dBm', NULL, NULL, NULL, NULL, 12000.66066891376, 0, 93.34645856198752, '2026-12-05T05:21:57.056531986Z');
INSERT INTO public.measurements ("time", session_key, receiver_id, frequency_mhz, sample_rate_khz, samples_count, snr_db, psd_dbm_hz, frequency_offset_hz, signal_power_dbm, noise_power_dbm, signal_detected, iq_data_path, metadata_json, computed_at, power_unit, signal_power_dbfs, noise_power_dbfs, calibration_offset_db, calibration_spread_db, measured_sample_rate_hz, sample_rate_spread_hz, timing_rms_ns, core_datetime) VALUES ('2026-12-05 05:21:57.056532+00', 'legacy1', 'f5len', 7.1, 12, 24000, 16.73603467680786, -120.16090259685424, -1543.6708345213892, -107.28801018144256, -124.02404485825043, true, 's3://heimdall-raw-iq/sessions/legacy1/websdr_f5len.npy', '{"timing": {"fresh_fixes": 24, "leap_seconds": 18, "core_datetime": "2026-12-05T05:21:57.056532033Z", "max_fix_gap_s": 0.04266358429304348, "timing_rms_ns": 93.55908213610057, "rejected_fixes": 0, "sample_rate_hz": 12000.866980214887, "sample_rate_spread_hz": 0.0, "nominal_sample_rate_hz": 12000.0, "stale_or_missing_frames": 23}, "metrics": {"snr_db": 16.73603467680786, "nperseg": 1024, "n_samples": 24000, "detection_z": 105172.45233072925, "bandwidth_hz": 93.75, "noise_power_db": -124.02404485825043, "psd_peak_db_hz": -120.16090259685424, "sample_rate_hz": 12000.0, "signal_detected": true, "signal_power_db": -107.28801018144256, "estimated_snr_db": 16.73603467680786, "noise_floor_db_hz": -164.81585731872667, "frequency_offset_hz": -1543.6708345213892, "psd_peak_frequency_hz": -1546.875}, "calibration": null, "source_kind": "simulated", "ground_truth": {"snr_db": 16.71477749829471, "distance_km": 674.6769193303753, "transmitter": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "altitude_m": 10.0, "modulation": "carrier", "frequency_hz": 7098455.9}, "lo_error_ppm": -0.061560158917801644, "path_loss_db": 128.6879616614179, "shadowing_db": 0.0, "gnss_jitter_ns": 100.0, "sample0_gps_ns": 1480483335056532000, "signal_in_band": true, "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth", "noise_figure_db": 9.205448379811164, "noise_power_dbm": -124.00273915971259, "signal_power_dbm": -107.28796166141788, "frequency_offset_hz": -1543.6629228713111, "propagation_delay_s": 0.0022504799614751327, "true_sample_rate_hz": 12000.865817630489, "sample_rate_error_ppm": 72.15146920756848}, "metrics_power_unit": "dBm"}', '2026-12-05 05:22:22.242869+00', 'dBm', NULL, NULL, NULL, NULL, 12000.866980214887, 0, 93.55908213610057, '2026-12-05T05:21:57.056532033Z');
INSERT INTO public.measurements ("time", session_key, receiver_id, frequency_mhz, sample_rate_khz, samples_count, snr_db, psd_dbm_hz, frequency_offset_hz, signal_power_dbm, noise_power_dbm, signal_detected, iq_data_path, metadata_json, computed_at, power_unit, signal_power_dbfs, noise_power_dbfs, calibration_offset_db, calibration_spread_db, measured_sample_rate_hz, sample_rate_spread_hz, timing_rms_ns, core_datetime) VALUES ('2026-12-05 05:21:57.056532+00', 'legacy1', 'hb9sl', 7.1, 12, 24000, 29.076287516362918, -108.9219393203951, -1545.1925919158002, -96.35517080697659, -125.4314583233395, true, 's3://heimdall-raw-iq/sessions/legacy1/websdr_hb9sl.npy', '{"timing": {"fresh_fixes": 24, "leap_seconds": 18, "core_datetime": "2026-12-05T05:21:57.056532032Z", "max_fix_gap_s": 1.0239585992551337, "timing_rms_ns": 77.55463466876486, "rejected_fixes": 0, "sample_rate_hz": 12000.485184595116, "sample_rate_spread_hz": 0.0, "nominal_sample_rate_hz": 12000.0, "stale_or_missing_frames": 23}, "metrics": {"snr_db": 29.076287516362918, "nperseg": 1024, "n_samples": 24000, "detection_z": 1396377.716619383, "bandwidth_hz": 187.5, "noise_power_db": -125.4314583233395, "psd_peak_db_hz": -108.9219393203951, "sample_rate_hz": 12000.0, "signal_detected": true, "signal_power_db": -96.35517080697659, "estimated_snr_db": 29.076287516362918, "noise_floor_db_hz": -166.22327078381574, "frequency_offset_hz": -1545.1925919158002, "psd_peak_frequency_hz": -1546.875}, "calibration": null, "source_kind": "simulated", "ground_truth": {"snr_db": 29.012298276305927, "distance_km": 274.5709845497889, "transmitter": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "altitude_m": 10.0, "modulation": "carrier", "frequency_hz": 7098455.9}, "lo_error_ppm": 0.15290770087788297, "path_loss_db": 117.75560771947474, "shadowing_db": 0.0, "gnss_jitter_ns": 100.0, "sample0_gps_ns": 1480483335056532000, "signal_in_band": true, "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth", "noise_figure_db": 7.840281543743087, "noise_power_dbm": -125.36790599578066, "signal_power_dbm": -96.35560771947473, "frequency_offset_hz": -1545.1856446758604, "propagation_delay_s": 0.0009158702202901612, "true_sample_rate_hz": 12000.485500718345, "sample_rate_error_ppm": 40.45839319539729}, "metrics_power_unit": "dBm"}', '2026-12-05 05:22:22.242869+00', 'dBm', NULL, NULL, NULL, NULL, 12000.485184595116, 0, 77.55463466876486, '2026-12-05T05:21:57.056532032Z');
INSERT INTO public.measurements ("time", session_key, receiver_id, frequency_mhz, sample_rate_khz, samples_count, snr_db, psd_dbm_hz, frequency_offset_hz, signal_power_dbm, noise_power_dbm, signal_detected, iq_data_path, metadata_json, computed_at, power_unit, signal_power_dbfs, noise_power_dbfs, calibration_offset_db, calibration_spread_db, measured_sample_rate_hz, sample_rate_spread_hz, timing_rms_ns, core_datetime) VALUES ('2026-12-05 05:21:57.056531+00', 'legacy1', 'hb9q', 7.1, 12, 24000, 27.416002821769343, -107.41098680570184, -1546.4846212086522, -94.9544897770428, -122.37049259881215, true, 's3://heimdall-raw-iq/sessions/legacy1/websdr_hb9q.npy', '{"timing": {"fresh_fixes": 23, "leap_seconds": 18, "core_datetime": "2026-12-05T05:21:57.056531979Z", "max_fix_gap_s": 0.042666236108695646, "timing_rms_ns": 93.98011894086517, "rejected_fixes": 0, "sample_rate_hz": 12000.12109565135, "sample_rate_spread_hz": 0.0, "nominal_sample_rate_hz": 12000.0, "stale_or_missing_frames": 24}, "metrics": {"snr_db": 27.416002821769343, "nperseg": 1024, "n_samples": 24000, "detection_z": 1347377.9571644792, "bandwidth_hz": 70.3125, "noise_power_db": -122.37049259881215, "psd_peak_db_hz": -107.41098680570184, "sample_rate_hz": 12000.0, "signal_detected": true, "signal_power_db": -94.9544897770428, "estimated_snr_db": 27.416002821769343, "noise_floor_db_hz": -163.1623050592884, "frequency_offset_hz": -1546.4846212086522, "psd_peak_frequency_hz": -1546.875}, "calibration": null, "source_kind": "simulated", "ground_truth": {"snr_db": 27.39779520154559, "distance_km": 244.6458980826245, "transmitter": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "altitude_m": 10.0, "modulation": "carrier", "frequency_hz": 7098455.9}, "lo_error_ppm": 0.3360175968218303, "path_loss_db": 116.35234004801357, "shadowing_db": 0.0, "gnss_jitter_ns": 100.0, "sample0_gps_ns": 1480483335056532000, "signal_in_band": true, "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth", "noise_figure_db": 10.858052289964572, "noise_power_dbm": -122.35013524955917, "signal_power_dbm": -94.95234004801358, "frequency_offset_hz": -1546.4857249370625, "propagation_delay_s": 0.0008160508763786997, "true_sample_rate_hz": 12000.12147175843, "sample_rate_error_ppm": 10.12264653589638}, "metrics_power_unit": "dBm"}', '2026-12-05 05:22:22.242869+00', 'dBm', NULL, NULL, NULL, NULL, 12000.12109565135, 0, 93.98011894086517, '2026-12-05T05:21:57.056531979Z');
INSERT INTO public.measurements ("time", session_key, receiver_id, frequency_mhz, sample_rate_khz, samples_count, snr_db, psd_dbm_hz, frequency_offset_hz, signal_power_dbm, noise_power_dbm, signal_detected, iq_data_path, metadata_json, computed_at, power_unit, signal_power_dbfs, noise_power_dbfs, calibration_offset_db, calibration_spread_db, measured_sample_rate_hz, sample_rate_spread_hz, timing_rms_ns, core_datetime) VALUES ('2026-12-05 05:21:57.056531+00', 'legacy1', 'oe3xec', 7.1, 12, 24000, 14.465037936697236, -122.36053526951748, -1541.717836801463, -108.80995191588433, -123.27498985258158, true, 's3://heimdall-raw-iq/sessions/legacy1/websdr_oe3xec.npy', '{"timing": {"fresh_fixes": 23, "leap_seconds": 18, "core_datetime": "2026-12-05T05:21:57.056531828Z", "max_fix_gap_s": 0.04266734621541501, "timing_rms_ns": 93.59743575943385, "rejected_fixes": 0, "sample_rate_hz": 11999.808879958484, "sample_rate_spread_hz": 0.0, "nominal_sample_rate_hz": 12000.0, "stale_or_missing_frames": 24}, "metrics": {"snr_db": 14.465037936697236, "nperseg": 1024, "n_samples": 24000, "detection_z": 62345.10010046513, "bandwidth_hz": 93.75, "noise_power_db": -123.27498985258158, "psd_peak_db_hz": -122.36053526951748, "sample_rate_hz": 12000.0, "signal_detected": true, "signal_power_db": -108.80995191588433, "estimated_snr_db": 14.465037936697236, "noise_floor_db_hz": -164.06680231305782, "frequency_offset_hz": -1541.717836801463, "psd_peak_frequency_hz": -1546.875}, "calibration": null, "source_kind": "simulated", "ground_truth": {"snr_db": 14.540558718879666, "distance_km": 764.9712820556438, "transmitter": {"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "altitude_m": 10.0, "modulation": "carrier", "frequency_hz": 7098455.9}, "lo_error_ppm": -0.33619443262733784, "path_loss_db": 130.21534145404263, "shadowing_db": 0.0, "gnss_jitter_ns": 100.0, "sample0_gps_ns": 1480483335056532000, "signal_in_band": true, "snr_definition": "full-band: signal power / noise power over the whole sample-rate bandwidth", "noise_figure_db": 9.85228736660146, "noise_power_dbm": -123.35590017292229, "signal_power_dbm": -108.81534145404262, "frequency_offset_hz": -1541.7130195279733, "propagation_delay_s": 0.002551669535514612, "true_sample_rate_hz": 11999.810145540707, "sample_rate_error_ppm": -15.821204941148807}, "metrics_power_unit": "dBm"}', '2026-12-05 05:22:22.242869+00', 'dBm', NULL, NULL, NULL, NULL, 11999.808879958484, 0, 93.59743575943385, '2026-12-05T05:21:57.056531828Z');


--
-- Data for Name: schema_migrations; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.schema_migrations (version, name, applied_at) VALUES (1, 'initial schema: websdrs, sessions, measurements, localizations', '2026-12-05 05:21:44.690447+00');
INSERT INTO public.schema_migrations (version, name, applied_at) VALUES (2, 'receiver kinds come from the source registry: drop the websdrs kind check', '2026-12-05 05:21:44.690447+00');
INSERT INTO public.schema_migrations (version, name, applied_at) VALUES (3, 'measurement power units (psd_dbm_hz, power_unit, dBFS and calibration columns); localization method', '2026-12-05 05:21:44.690447+00');
INSERT INTO public.schema_migrations (version, name, applied_at) VALUES (4, 'session_captures (per-receiver outcome of a session); sessions.status_reason', '2026-12-05 05:21:44.690447+00');
INSERT INTO public.schema_migrations (version, name, applied_at) VALUES (5, 'recording sessions name their upload batch and files; measurements keep the capture''s timing', '2026-12-05 05:21:44.690447+00');
INSERT INTO public.schema_migrations (version, name, applied_at) VALUES (6, 'localization TDoA pair lags; localization methods checked', '2026-12-05 05:21:44.690447+00');


--
-- Data for Name: session_captures; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.session_captures (session_key, receiver_id, status, error_type, error_message, attempts, bytes, sha256, start_time, end_time, run_id, updated_at) VALUES ('legacy1', 'dk0ghz', 'stored', NULL, NULL, 1, 192128, 'dfb3cedf71892c725ca8903d1373019af5bea4e63008f9240d5bb8e2f1fdb628', '2026-12-05 05:21:57.056532+00', '2026-12-05 05:21:59.056532+00', '9436ff6c-5e06-4811-96d8-5fc40f8d21a9', '2026-12-05 05:22:20.841347+00');
INSERT INTO public.session_captures (session_key, receiver_id, status, error_type, error_message, attempts, bytes, sha256, start_time, end_time, run_id, updated_at) VALUES ('legacy1', 'oe3xec', 'stored', NULL, NULL, 1, 192128, 'b72d8f302315d36bb4f2271819844b1a6dd45063095d11d2938a15484219e1d8', '2026-12-05 05:21:57.056532+00', '2026-12-05 05:21:59.056532+00', '9436ff6c-5e06-4811-96d8-5fc40f8d21a9', '2026-12-05 05:22:20.868752+00');
INSERT INTO public.session_captures (session_key, receiver_id, status, error_type, error_message, attempts, bytes, sha256, start_time, end_time, run_id, updated_at) VALUES ('legacy1', 'f5len', 'stored', NULL, NULL, 1, 192128, '267235931687a40609fb00ac75624623776a8797b19b06f483e05bb78bdf5932', '2026-12-05 05:21:57.056532+00', '2026-12-05 05:21:59.056532+00', '9436ff6c-5e06-4811-96d8-5fc40f8d21a9', '2026-12-05 05:22:20.867332+00');
INSERT INTO public.session_captures (session_key, receiver_id, status, error_type, error_message, attempts, bytes, sha256, start_time, end_time, run_id, updated_at) VALUES ('legacy1', 'g0mjw', 'stored', NULL, NULL, 1, 192128, '2d46bd724a3b6a7d55490166d16016e79b1347180ff634279979ef342563bfce', '2026-12-05 05:21:57.056532+00', '2026-12-05 05:21:59.056532+00', '9436ff6c-5e06-4811-96d8-5fc40f8d21a9', '2026-12-05 05:22:20.87019+00');
INSERT INTO public.session_captures (session_key, receiver_id, status, error_type, error_message, attempts, bytes, sha256, start_time, end_time, run_id, updated_at) VALUES ('legacy1', 'hb9q', 'stored', NULL, NULL, 1, 192128, '60267b38a087317a6025252b8615d86328cf42f8f6869c3eff81620fd1fc38b1', '2026-12-05 05:21:57.056532+00', '2026-12-05 05:21:59.056532+00', '9436ff6c-5e06-4811-96d8-5fc40f8d21a9', '2026-12-05 05:22:20.867994+00');
INSERT INTO public.session_captures (session_key, receiver_id, status, error_type, error_message, attempts, bytes, sha256, start_time, end_time, run_id, updated_at) VALUES ('legacy1', 'ph0m', 'stored', NULL, NULL, 1, 192128, '61fb893c9379123cc5cbeba67d255dd262f82dc4327cbff5cc7a97fccf0d26f5', '2026-12-05 05:21:57.056532+00', '2026-12-05 05:21:59.056532+00', '9436ff6c-5e06-4811-96d8-5fc40f8d21a9', '2026-12-05 05:22:20.87291+00');
INSERT INTO public.session_captures (session_key, receiver_id, status, error_type, error_message, attempts, bytes, sha256, start_time, end_time, run_id, updated_at) VALUES ('legacy1', 'hb9sl', 'stored', NULL, NULL, 1, 192128, 'e29f612acf2d384f6b099a6fc116724bfb96820d80a4a5b23bc65ec41fdadc3d', '2026-12-05 05:21:57.056532+00', '2026-12-05 05:21:59.056532+00', '9436ff6c-5e06-4811-96d8-5fc40f8d21a9', '2026-12-05 05:22:20.880435+00');


--
-- Data for Name: sessions; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.sessions (id, session_key, center_frequency_hz, duration_s, sample_rate_hz, receiver_ids, source_kind, transmitter, requested_at, scheduled_for, status, requested_by, launched_at, run_id, archived_at, archived_from_status, status_reason, recordings) OVERRIDING SYSTEM VALUE VALUES (1, 'legacy1', 7100000, 2, 12000, '{dk0ghz,f5len,g0mjw,hb9q,hb9sl,oe3xec,ph0m}', 'auto', '{"eirp_dbm": 21.4, "latitude": 48.686728, "longitude": 5.947191, "offset_hz": -1544.1, "altitude_m": 10.0, "modulation": "carrier", "shadowing_sigma_db": 0.0}', '2026-12-05 05:21:57.059681+00', '2026-12-05 05:21:57.056532+00', 'succeeded', 'cli:unknown', '2026-12-05 05:22:12.303896+00', 'cli:4c734201ab9d4d84918570900fcb026b', NULL, NULL, '7 of 7 receivers measured', NULL);


--
-- Data for Name: websdrs; Type: TABLE DATA; Schema: public; Owner: -
--

INSERT INTO public.websdrs (id, name, url, kind, location_name, latitude, longitude, altitude_m, is_active, timeout_seconds, retry_count, max_channels, min_frequency_hz, max_frequency_hz, created_at, updated_at) VALUES ('f5len', 'F5LEN', 'sim://f5len', 'simulated', 'Toulouse', 43.5, 1.4, 150, true, 30, 3, 4, 0, NULL, '2026-12-05 05:21:44.796553+00', '2026-12-05 05:21:44.796553+00');
INSERT INTO public.websdrs (id, name, url, kind, location_name, latitude, longitude, altitude_m, is_active, timeout_seconds, retry_count, max_channels, min_frequency_hz, max_frequency_hz, created_at, updated_at) VALUES ('ph0m', 'PH0M', 'sim://ph0m', 'simulated', 'Pachmarke', 52.5, 4.8, 5, true, 30, 3, 4, 0, NULL, '2026-12-05 05:21:44.796553+00', '2026-12-05 05:21:44.796553+00');
INSERT INTO public.websdrs (id, name, url, kind, location_name, latitude, longitude, altitude_m, is_active, timeout_seconds, retry_count, max_channels, min_frequency_hz, max_frequency_hz, created_at, updated_at) VALUES ('g0mjw', 'G0MJW', 'sim://g0mjw', 'simulated', 'Bridgnorth', 52.5, -2.4, 80, true, 30, 3, 4, 0, NULL, '2026-12-05 05:21:44.796553+00', '2026-12-05 05:21:44.796553+00');
INSERT INTO public.websdrs (id, name, url, kind, location_name, latitude, longitude, altitude_m, is_active, timeout_seconds, retry_count, max_channels, min_frequency_hz, max_frequency_hz, created_at, updated_at) VALUES ('hb9q', 'HB9Q', 'sim://hb9q', 'simulated', 'Zurich', 47.3, 8.5, 410, true, 30, 3, 4, 0, NULL, '2026-12-05 05:21:44.796553+00', '2026-12-05 05:21:44.796553+00');
INSERT INTO public.websdrs (id, name, url, kind, location_name, latitude, longitude, altitude_m, is_active, timeout_seconds, retry_count, max_channels, min_frequency_hz, max_frequency_hz, created_at, updated_at) VALUES ('dk0ghz', 'DK0GHZ', 'sim://dk0ghz', 'simulated', 'Black Forest', 48.8, 8.2, 900, true, 30, 3, 4, 0, NULL, '2026-12-05 05:21:44.796553+00', '2026-12-05 05:21:44.796553+00');
INSERT INTO public.websdrs (id, name, url, kind, location_name, latitude, longitude, altitude_m, is_active, timeout_seconds, retry_count, max_channels, min_frequency_hz, max_frequency_hz, created_at, updated_at) VALUES ('oe3xec', 'OE3XEC', 'sim://oe3xec', 'simulated', 'Vienna', 48.2, 16.3, 190, true, 30, 3, 4, 0, NULL, '2026-12-05 05:21:44.796553+00', '2026-12-05 05:21:44.796553+00');
INSERT INTO public.websdrs (id, name, url, kind, location_name, latitude, longitude, altitude_m, is_active, timeout_seconds, retry_count, max_channels, min_frequency_hz, max_frequency_hz, created_at, updated_at) VALUES ('hb9sl', 'HB9SL', 'sim://hb9sl', 'simulated', 'St. Gallen', 47.4, 9.1, 670, true, 30, 3, 4, 0, NULL, '2026-12-05 05:21:44.796553+00', '2026-12-05 05:21:44.796553+00');


--
-- Name: sessions_id_seq; Type: SEQUENCE SET; Schema: public; Owner: -
--

SELECT pg_catalog.setval('public.sessions_id_seq', 1, true);


--
-- Name: localizations localizations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.localizations
    ADD CONSTRAINT localizations_pkey PRIMARY KEY (session_key, method, "time");


--
-- Name: measurements measurements_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.measurements
    ADD CONSTRAINT measurements_pkey PRIMARY KEY (session_key, receiver_id, "time");


--
-- Name: schema_migrations schema_migrations_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.schema_migrations
    ADD CONSTRAINT schema_migrations_pkey PRIMARY KEY (version);


--
-- Name: session_captures session_captures_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.session_captures
    ADD CONSTRAINT session_captures_pkey PRIMARY KEY (session_key, receiver_id);


--
-- Name: sessions sessions_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sessions
    ADD CONSTRAINT sessions_pkey PRIMARY KEY (id);


--
-- Name: sessions sessions_session_key_key; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.sessions
    ADD CONSTRAINT sessions_session_key_key UNIQUE (session_key);


--
-- Name: websdrs websdrs_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.websdrs
    ADD CONSTRAINT websdrs_pkey PRIMARY KEY (id);


--
-- Name: measurements_receiver_time_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX measurements_receiver_time_idx ON public.measurements USING btree (receiver_id, "time");


--
-- Name: measurements_session_time_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX measurements_session_time_idx ON public.measurements USING btree (session_key, "time");


--
-- Name: sessions_status_id_idx; Type: INDEX; Schema: public; Owner: -
--

CREATE INDEX sessions_status_id_idx ON public.sessions USING btree (status, id);


--
-- Name: websdrs websdrs_set_updated_at; Type: TRIGGER; Schema: public; Owner: -
--

CREATE TRIGGER websdrs_set_updated_at BEFORE UPDATE ON public.websdrs FOR EACH ROW WHEN ((old.* IS DISTINCT FROM new.*)) EXECUTE FUNCTION public.heimdall_set_updated_at();


--
-- PostgreSQL database dump complete
--


