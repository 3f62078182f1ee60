// A token bucket: the one rate limiter of the browser peer (frames per neighbor, offers per
// sender), as peer/ratelimit.py. `rate` in events per second, `burst` in events, `clock` in seconds.

export class TokenBucket {
  constructor(rate, burst, clock = () => performance.now() / 1000) {
    Object.assign(this, { rate, burst, clock, tokens: burst, updated: clock() });
  }

  take() {
    const now = this.clock();
    this.tokens = Math.min(this.burst, this.tokens + (now - this.updated) * this.rate);
    this.updated = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
