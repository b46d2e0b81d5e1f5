/**
 * Synthetic members for the demo phone bank. No real people: names are drawn from common name
 * lists, places are invented, phone numbers are in Ofcom's drama range (07700 900000–900999),
 * emails are at example.org and postcodes use the non-existent `XX` area.
 *
 * A member is computed from its number and the seed, so a directory of any size costs nothing to
 * hold and the same number always gives the same person, on any machine, in any run.
 */

/** One member record. The last five fields are ones a volunteer making calls should not see. */
export interface Member {
  id: string;
  name: string;
  phone: string;
  ward: string;
  constituency: string;
  email: string;
  /** ISO date, `YYYY-MM-DD` */
  dateOfBirth: string;
  address: string;
  membershipNumber: string;
  notes: string;
}

/** A fixed-size, read-only set of members numbered `1..count` (ids `m_000001`…). */
export interface MemberDirectory {
  readonly count: number;
  readonly seed: number;
  /** The member at a 0-based position (`at(0)` is `m_000001`). Throws outside `0..count-1`. */
  at(index: number): Member;
  /** The member with this id, or `undefined` for an unknown or malformed id. */
  get(id: string): Member | undefined;
}

export const DEFAULT_MEMBER_COUNT = 50_000;
export const DEFAULT_MEMBER_SEED = 20_200_404;
/** Ids have six digits. */
export const MAX_MEMBER_COUNT = 999_999;

const ID = /^m_(\d{6})$/;

/** `m_000123` for member number 123. */
export const memberId = (n: number): string => `m_${String(n).padStart(6, "0")}`;

/** Builds a directory. Defaults: 50,000 members, a fixed seed. */
export function createMemberDirectory(opts: { count?: number; seed?: number } = {}): MemberDirectory {
  const count = opts.count ?? DEFAULT_MEMBER_COUNT;
  const seed = opts.seed ?? DEFAULT_MEMBER_SEED;
  if (!Number.isInteger(count) || count < 1 || count > MAX_MEMBER_COUNT) {
    throw new RangeError(`count must be an integer in 1..${MAX_MEMBER_COUNT}`);
  }
  if (!Number.isInteger(seed)) throw new RangeError("seed must be an integer");
  return {
    count,
    seed,
    at(index) {
      if (!Number.isInteger(index) || index < 0 || index >= count)
        throw new RangeError("member index out of range");
      return generateMember(index + 1, seed);
    },
    get(id) {
      const m = ID.exec(id);
      if (!m) return undefined;
      const n = Number(m[1]);
      return n >= 1 && n <= count ? generateMember(n, seed) : undefined;
    },
  };
}

/** Member number `n` (1-based) for `seed`. Pure: the same inputs always give the same member. */
export function generateMember(n: number, seed: number = DEFAULT_MEMBER_SEED): Member {
  const rnd = mulberry32(mix(seed, n));
  const pick = <T>(list: readonly T[]): T => list[Math.floor(rnd() * list.length)]!;
  const int = (lo: number, hi: number): number => lo + Math.floor(rnd() * (hi - lo + 1));

  const first = pick(FIRST_NAMES);
  const last = pick(LAST_NAMES);
  const place = pick(CONSTITUENCIES);
  const ward = `${pick(place.wards)} ${pick(WARD_SUFFIXES)}`;
  const phone = `07700 900${String(int(0, 999)).padStart(3, "0")}`;
  const dob = new Date(Date.UTC(1935, 0, 1) + int(0, DOB_SPAN_DAYS) * DAY_MS).toISOString().slice(0, 10);
  const address =
    `${int(1, 180)} ${pick(STREETS)} ${pick(STREET_TYPES)}, ${place.town}, ` +
    `XX${int(1, 99)} ${int(0, 9)}${pick(POSTCODE_LETTERS)}${pick(POSTCODE_LETTERS)}`;
  const local = `${first}.${last}`.toLowerCase().replace(/[^a-z.]/g, "");

  return {
    id: memberId(n),
    name: `${first} ${last}`,
    phone,
    ward,
    constituency: place.name,
    email: `${local}.${n}@example.org`,
    dateOfBirth: dob,
    address,
    membershipNumber: `L${String(int(0, 9_999_999)).padStart(7, "0")}`,
    notes: pick(NOTES),
  };
}

// --- PRNG: mulberry32, seeded per member by a murmur3-style mix of (seed, n) -----------------

function mix(seed: number, n: number): number {
  let h = (seed ^ Math.imul(n, 0x9e3779b1)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function mulberry32(state: number): () => number {
  let a = state;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

const DAY_MS = 86_400_000;
// 1935-01-01 .. 2006-12-31
const DOB_SPAN_DAYS = Math.round((Date.UTC(2006, 11, 31) - Date.UTC(1935, 0, 1)) / DAY_MS);

// --- word lists (changing them changes every member: tests pin a few) -----------------------

// biome-ignore format: a word list reads better packed
const FIRST_NAMES = [
  "Aisha", "Alan", "Alice", "Amir", "Amy", "Andrew", "Angela", "Anna", "Ben", "Beth",
  "Bilal", "Brian", "Carol", "Chloe", "Chris", "Claire", "Colin", "Dan", "David", "Deborah",
  "Emma", "Eve", "Fatima", "Fiona", "Gareth", "Grace", "Hannah", "Harry", "Helen", "Ian",
  "Imran", "Jack", "James", "Jane", "Jasmine", "Joe", "Karen", "Kate", "Kieran", "Laura",
  "Leah", "Liam", "Lucy", "Mark", "Mary", "Megan", "Mohammed", "Naomi", "Neil", "Nia",
  "Olivia", "Omar", "Owen", "Patrick", "Paul", "Priya", "Rachel", "Rhys", "Rob", "Ruth",
  "Sam", "Sarah", "Sean", "Siobhan", "Sophie", "Steve", "Tom", "Tariq", "Una", "Yusuf",
] as const;

// biome-ignore format: a word list reads better packed
const LAST_NAMES = [
  "Ahmed", "Ali", "Allen", "Baker", "Begum", "Bell", "Brown", "Campbell", "Clarke", "Cooper",
  "Davies", "Edwards", "Evans", "Fisher", "Green", "Griffiths", "Hall", "Harris", "Hill", "Hughes",
  "Hussain", "Jackson", "James", "Johnson", "Jones", "Kaur", "Kelly", "Khan", "King", "Lewis",
  "Martin", "Mitchell", "Moore", "Morgan", "Murphy", "O'Brien", "Owen", "Patel", "Phillips", "Price",
  "Roberts", "Robinson", "Scott", "Shah", "Singh", "Smith", "Taylor", "Thomas", "Thompson", "Turner",
  "Walker", "Ward", "Watson", "White", "Williams", "Wilson", "Wood", "Wright", "Young", "Zhang",
] as const;

interface Place {
  name: string;
  town: string;
  wards: readonly string[];
}

// Invented constituencies and towns.
const CONSTITUENCIES: readonly Place[] = [
  { name: "Ashbourne Vale", town: "Ashbourne Vale", wards: ["Millbrook", "Church", "Station", "Foxley"] },
  {
    name: "Brackenfield North",
    town: "Brackenfield",
    wards: ["Harrow Lane", "Kingsmead", "Upper", "Riverside"],
  },
  { name: "Brackenfield South", town: "Brackenfield", wards: ["Lowfield", "Canal", "St Anne's", "Parkside"] },
  { name: "Calder Moor", town: "Caldermoor", wards: ["Moorside", "Heathfield", "Quarry", "Tenter"] },
  { name: "Dunmere and Holt", town: "Dunmere", wards: ["Holt", "Dunmere Central", "Marsh", "Beacon"] },
  { name: "Eastwick Cross", town: "Eastwick", wards: ["Market", "Crossways", "Orchard", "Abbey"] },
  { name: "Fenbridge", town: "Fenbridge", wards: ["Lock", "Willow", "Fenside", "Bridge"] },
  { name: "Glenharrow", town: "Glenharrow", wards: ["Castle", "Glen", "Harrow Hill", "Mill"] },
  { name: "Hollins Green", town: "Hollins", wards: ["Green", "Common", "Brookside", "Forge"] },
  { name: "Kestrel Bay", town: "Kestrel Bay", wards: ["Harbour", "Cliff", "Promenade", "Sandhills"] },
  { name: "Lindale Valley", town: "Lindale", wards: ["Valley", "Ridge", "Chapel", "Hope"] },
  { name: "Northam Central", town: "Northam", wards: ["Town Centre", "Victoria", "Albert", "Railway"] },
  { name: "Oakhurst West", town: "Oakhurst", wards: ["Westfield", "Oak", "Grange", "Meadow"] },
  { name: "Portsey East", town: "Portsey", wards: ["Docks", "Eastgate", "Shore", "Tannery"] },
  { name: "Redmarsh", town: "Redmarsh", wards: ["Red Lane", "Marshside", "Kiln", "Newtown"] },
  { name: "Stonebridge and Wyre", town: "Stonebridge", wards: ["Wyre", "Stone", "Weir", "Hillcrest"] },
];

const WARD_SUFFIXES = ["North", "South", "East", "West", "Central", "Ward"] as const;

// biome-ignore format: a word list reads better packed
const STREETS = [
  "Acacia", "Alder", "Beech", "Chapel", "Cherry", "Church", "Elm", "Hawthorn", "High", "Holly",
  "Juniper", "Lime", "Maple", "Mill", "Oak", "Orchard", "Park", "Rowan", "Station", "Willow",
] as const;

const STREET_TYPES = ["Street", "Road", "Avenue", "Lane", "Close", "Crescent", "Drive", "Terrace"] as const;

const POSTCODE_LETTERS = "ABDEFGHJLNPQRSTUWXYZ".split("");

const NOTES = [
  "",
  "",
  "",
  "Prefers evening calls.",
  "Do not call before 10am.",
  "Hard of hearing: speak clearly.",
  "Asked not to be called on Sundays.",
  "Former branch secretary.",
  "Welsh speaker.",
  "Moved recently: check address.",
  "Volunteered at the last election.",
  "Works shifts: try weekends.",
] as const;
