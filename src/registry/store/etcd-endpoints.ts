// Which of the configured endpoints the cluster no longer has: after a member is
// removed (and maybe replaced at another address), ETCD_ENDPOINTS still names
// it. Calls already avoid it (etcd-members.ts holds out a member that does not
// answer); this only tells the operator which entry to update. Endpoints are
// compared by scheme, host and port with the client URLs the members advertise.

const origin = (url: string): string => {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
};

/** The endpoints no member of the cluster advertises as a client URL. */
export function goneEndpoints(endpoints: string[], members: { clientURLs: string[] }[]): string[] {
  const advertised = new Set(members.flatMap((m) => m.clientURLs.map(origin)));
  return endpoints.filter((e) => !advertised.has(origin(e)));
}
