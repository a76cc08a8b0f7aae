# The contract of the compiled twin (_clock.pyx); _clock_py has the same one.

IMPLEMENTATION: str

class Clock:
    def now(self) -> float: ...
