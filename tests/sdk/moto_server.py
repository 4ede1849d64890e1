"""moto_server with one fix to its authentication: it signs a GET, HEAD or DELETE request that
has no body as if the body were the request's headers (moto 5.2.5 falls back to its parsed
query string, which is the header dict when the query is empty), so every signed REST-JSON read
(EFS's DescribeFileSystems, for one) is refused as SignatureDoesNotMatch although AWS accepts
it. Everything else is moto's own `moto_server`."""
import sys

from moto.iam import access_control


def _signable(create):
    def create_aws_request(self):
        if self._method in ("GET", "HEAD", "DELETE") and not self._body:
            data, self._data = self._data, ""
            try:
                return create(self)
            finally:
                self._data = data
        return create(self)
    return create_aws_request


access_control.IAMRequestBase._create_aws_request = _signable(access_control.IAMRequestBase._create_aws_request)

if __name__ == "__main__":
    from moto.server import main
    sys.exit(main(sys.argv[1:]))
