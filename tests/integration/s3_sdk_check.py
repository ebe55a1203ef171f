#!/usr/bin/env python3
"""Cross-checks ingestfs-server's SigV4 against a stock S3 SDK (botocore/boto3, Debian's).

Prints, one per line:
  sdk-put URL            a PUT URL presigned by boto3 for the server's endpoint
  sdk-get URL            the matching GET URL
  server-signature SIG   the X-Amz-Signature of --server-url, as the server made it
  botocore-signature SIG what botocore computes for the same request and timestamp
  sdk-post-url URL       a presigned POST (browser upload) by boto3: its URL
  sdk-post-fields JSON   and its form fields, with a policy allowing 0..1000 bytes
Only for tests on loopback; the credentials are the server's local defaults.
"""
import argparse
import datetime as real_datetime
import json
import sys
import urllib.parse

import boto3
import botocore.auth
import botocore.awsrequest
import botocore.config
import botocore.credentials

ACCESS_KEY = "ingestfs-local"
SECRET_KEY = "ingestfs-local-secret"
REGION = "us-east-1"
BUCKET = "ingest"


def sdk_urls(endpoint):
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name=REGION,
        config=botocore.config.Config(signature_version="s3v4", s3={"addressing_style": "path"}),
    )
    key = "sdk/boto3 ü+file.bin"
    put = s3.generate_presigned_url("put_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600)
    get = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key}, ExpiresIn=600)
    post = s3.generate_presigned_post(
        BUCKET, "sdk/post ü.bin", Conditions=[["content-length-range", 0, 1000]], ExpiresIn=600
    )
    return put, get, post


def botocore_signature(server_url):
    parts = urllib.parse.urlsplit(server_url)
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    amz = {k: v for k, v in query if k.startswith("X-Amz-")}
    extra = [(k, v) for k, v in query if not k.startswith("X-Amz-")]
    fixed = real_datetime.datetime.strptime(amz["X-Amz-Date"], "%Y%m%dT%H%M%SZ")

    class FixedDatetime(real_datetime.datetime):
        @classmethod
        def utcnow(cls):
            return fixed

    class FixedModule:
        datetime = FixedDatetime
        timedelta = real_datetime.timedelta

    botocore.auth.datetime = FixedModule
    url = urllib.parse.urlunsplit(
        (parts.scheme, parts.netloc, parts.path, urllib.parse.urlencode(extra, quote_via=urllib.parse.quote), "")
    )
    request = botocore.awsrequest.AWSRequest(method="PUT", url=url)
    creds = botocore.credentials.Credentials(ACCESS_KEY, SECRET_KEY)
    botocore.auth.S3SigV4QueryAuth(creds, "s3", REGION, expires=int(amz["X-Amz-Expires"])).add_auth(request)
    signed = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(request.url).query))
    return amz["X-Amz-Signature"], signed["X-Amz-Signature"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--endpoint", required=True)
    ap.add_argument("--server-url", required=True)
    args = ap.parse_args()
    put, get, post = sdk_urls(args.endpoint)
    print("sdk-put", put)
    print("sdk-get", get)
    print("sdk-post-url", post["url"])
    print("sdk-post-fields", json.dumps(post["fields"]))
    ours, theirs = botocore_signature(args.server_url)
    print("server-signature", ours)
    print("botocore-signature", theirs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
