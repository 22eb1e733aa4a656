#!/bin/sh
# One-shot MinIO setup for Heimdall (run by the minio_init service; safe to run again):
# the raw-IQ bucket with versioning, and a Heimdall service user limited to that bucket.
set -eu

mc alias set heimdall http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD"
mc mb --ignore-existing "heimdall/$HEIMDALL_S3_BUCKET"
# Versioning keeps an overwritten or deleted capture recoverable.
mc version enable "heimdall/$HEIMDALL_S3_BUCKET"

cat > /tmp/heimdall-policy.json <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow",
     "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketVersions",
                "s3:GetBucketVersioning", "s3:PutBucketVersioning"],
     "Resource": ["arn:aws:s3:::$HEIMDALL_S3_BUCKET"]},
    {"Effect": "Allow",
     "Action": ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:DeleteObject",
                "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$HEIMDALL_S3_BUCKET/*"]}
  ]
}
POLICY
mc admin policy create heimdall heimdall-raw-iq-rw /tmp/heimdall-policy.json
# `user add` updates the secret of an existing user, so a changed .env takes effect.
mc admin user add heimdall "$HEIMDALL_S3_ACCESS_KEY_ID" "$HEIMDALL_S3_SECRET_ACCESS_KEY"
mc admin policy attach heimdall heimdall-raw-iq-rw --user "$HEIMDALL_S3_ACCESS_KEY_ID" 2>/dev/null \
  || echo "policy already attached"
echo "bucket $HEIMDALL_S3_BUCKET ready (versioning on) for user $HEIMDALL_S3_ACCESS_KEY_ID"
