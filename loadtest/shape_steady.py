"""Steady shape: ramp to ``-u`` users over the first tenth of ``-t``, then hold them.

locust -f loadtest/locustfile.py,loadtest/shape_steady.py -u 2000 -t 5m --host ...
"""

from __future__ import annotations

from locust import LoadTestShape


class Steady(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        users, seconds = options.num_users or 100, options.run_time or 300
        now = self.get_run_time()
        if now > seconds:
            return None
        ramp = max(1.0, seconds / 10)
        return users, max(1.0, users / ramp)
