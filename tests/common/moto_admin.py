"""Administration of the test S3 server (moto), with boto3 (which moto brings).

  setup ENDPOINT BUCKET          create the bucket and two users: writer (s3:*)
                                 and reader (GetObject, ListBucket); print their keys
  list ENDPOINT BUCKET PREFIX    print the keys under PREFIX, one per line
  put ENDPOINT BUCKET KEY FILE   upload FILE (as the writer: KPACKFS_AK/KPACKFS_SK)
  delete ENDPOINT BUCKET KEY     delete KEY (as the writer)
"""
import json
import os
import sys

import boto3


def client(service, endpoint, key=None, secret=None):
    return boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id=key or os.environ.get("KPACKFS_AK", "root"),
                        aws_secret_access_key=secret or os.environ.get("KPACKFS_SK", "root"))


def main():
    cmd, endpoint, bucket = sys.argv[1], sys.argv[2], sys.argv[3]
    if cmd == "setup":
        client("s3", endpoint).create_bucket(Bucket=bucket)
        iam, out = client("iam", endpoint), {}
        for user, actions in [("writer", ["s3:*"]), ("reader", ["s3:GetObject", "s3:ListBucket"])]:
            iam.create_user(UserName=user)
            doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}
            arn = iam.create_policy(PolicyName=user, PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
            iam.attach_user_policy(UserName=user, PolicyArn=arn)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            out[user] = [key["AccessKeyId"], key["SecretAccessKey"]]
        print(json.dumps(out))
    elif cmd == "list":
        pages = client("s3", endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=sys.argv[4])
        for page in pages:
            for obj in page.get("Contents", []):
                print(obj["Key"])
    elif cmd == "put":
        with open(sys.argv[5], "rb") as f:
            client("s3", endpoint).put_object(Bucket=bucket, Key=sys.argv[4], Body=f.read())
    elif cmd == "delete":
        client("s3", endpoint).delete_object(Bucket=bucket, Key=sys.argv[4])
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
