/** Source of the current time. Injected wherever time matters so tests never sleep. */
export interface Clock {
  now(): Date;
}

export const systemClock: Clock = { now: () => new Date() };

/** A clock that only moves when told to. */
export class FakeClock implements Clock {
  #ms: number;
  constructor(start: Date | string | number = "2020-03-01T12:00:00Z") {
    this.#ms = new Date(start).getTime();
  }
  now(): Date {
    return new Date(this.#ms);
  }
  set(at: Date | string | number): void {
    this.#ms = new Date(at).getTime();
  }
  advance(ms: number): void {
    this.#ms += ms;
  }
}

/** Whole seconds since the epoch, as JWT claims count time. */
export const epochSeconds = (d: Date): number => Math.floor(d.getTime() / 1000);
