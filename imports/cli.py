"""Origin options shared by the management commands."""

from imports.services.origin import OriginParams


def add_origin_arguments(parser):
    parser.add_argument("--bucket", help="S3 bucket (default neuronpedia-datasets or $IMPORTS_S3_BUCKET)")
    parser.add_argument("--prefix", help="key prefix (default v1/ or $IMPORTS_S3_PREFIX)")
    parser.add_argument("--region", help="S3 region (default us-east-1)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--endpoint-url", help="S3-compatible endpoint (MinIO, moto, R2…)")
    where.add_argument("--dir", help="a local directory with the v1 layout instead of S3")


def origin_params(options) -> OriginParams:
    return OriginParams.from_options(
        bucket=options.get("bucket"),
        prefix=options.get("prefix"),
        endpoint_url=options.get("endpoint_url"),
        region=options.get("region"),
        directory=options.get("dir"),
    )
