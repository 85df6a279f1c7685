"""Rush shape: a tenth of ``-u`` patients browse for a fifth of ``-t``; then the rest arrive
within five seconds (a popular doctor opens her agenda), and everyone stays to the end.
Combine with a high ``--hot-share`` to send the surge to the hot doctor.

    locust -f loadtest/locustfile.py,loadtest/shape_rush.py -u 2000 -t 2m --hot-share 0.8 ...
"""

from __future__ import annotations

from locust import LoadTestShape


class Rush(LoadTestShape):
    def tick(self) -> tuple[int, float] | None:
        options = self.runner.environment.parsed_options
        users, seconds = options.num_users or 100, options.run_time or 120
        now = self.get_run_time()
        if now > seconds:
            return None
        calm = max(1, users // 10)
        if now < seconds / 5:
            return calm, max(1.0, calm / 10)
        return users, max(1.0, (users - calm) / 5)
