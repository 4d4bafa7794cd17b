"""The quickstart of requests-futures' README, unchanged but for the URL
(a local httpbin, given on the command line instead of httpbin.org): with
PYTHONPATH=python it runs on quiver's drop-in. scripts/demo runs it.

    /usr/bin/python3 examples/python_quickstart.py http://127.0.0.1:8080
"""

import sys

from requests_futures.sessions import FuturesSession

httpbin = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"

session = FuturesSession()
# first request is started in background
future_one = session.get(httpbin + '/get')
# second requests is started immediately
future_two = session.get(httpbin + '/get?foo=bar')
# wait for the first request to complete, if it hasn't already
response_one = future_one.result()
print('response one status: {0}'.format(response_one.status_code))
print(response_one.content)
# wait for the second request to complete, if it hasn't already
response_two = future_two.result()
print('response two status: {0}'.format(response_two.status_code))
print(response_two.content)
