#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A second opinion on a bucket, for the tests: botocore (Debian's
python3-botocore, run by /usr/bin/python3), independent of the daemon's
own client. Endpoint and credentials from S3_ENDPOINT and AWS_*.

  s3cli.py ls BUCKET PREFIX      every key under PREFIX and its size
  s3cli.py count BUCKET PREFIX   how many keys
  s3cli.py get BUCKET KEY FILE   the object into FILE
  s3cli.py put BUCKET KEY FILE   FILE as the object
  s3cli.py rm BUCKET KEY         delete the key
  s3cli.py cp BUCKET FROM TO     every key under prefix FROM copied
                                 (server side) to prefix TO; a key
                                 deleted since the listing is left out
  s3cli.py rmtree BUCKET PREFIX  every key under PREFIX deleted
"""
import os
import sys

import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError


def client():
    s = botocore.session.get_session()
    return s.create_client(
        "s3", endpoint_url=os.environ["S3_ENDPOINT"],
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
        config=Config(s3={"addressing_style": "path"},
                      retries={"max_attempts": 2}))


def keys(c, bucket, prefix):
    token = None
    while True:
        args = {"Bucket": bucket, "Prefix": prefix}
        if token:
            args["ContinuationToken"] = token
        page = c.list_objects_v2(**args)
        for o in page.get("Contents", []):
            yield o["Key"], o["Size"]
        if not page.get("IsTruncated"):
            return
        token = page["NextContinuationToken"]


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    c = client()
    cmd, bucket = argv[1], argv[2]
    if cmd == "ls":
        for k, size in keys(c, bucket, argv[3]):
            print(k, size)
    elif cmd == "count":
        print(sum(1 for _ in keys(c, bucket, argv[3])))
    elif cmd == "get":
        body = c.get_object(Bucket=bucket, Key=argv[3])["Body"].read()
        with open(argv[4], "wb") as f:
            f.write(body)
    elif cmd == "put":
        with open(argv[4], "rb") as f:
            c.put_object(Bucket=bucket, Key=argv[3], Body=f.read())
    elif cmd == "rm":
        c.delete_object(Bucket=bucket, Key=argv[3])
    elif cmd == "cp":
        src, dst = argv[3], argv[4]
        for k, _ in list(keys(c, bucket, src)):
            try:
                c.copy_object(Bucket=bucket, Key=dst + k[len(src):],
                              CopySource={"Bucket": bucket, "Key": k})
            except ClientError as e:
                if e.response["Error"]["Code"] != "NoSuchKey":
                    raise
    elif cmd == "rmtree":
        for k, _ in list(keys(c, bucket, argv[3])):
            c.delete_object(Bucket=bucket, Key=k)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv)
