// Which of the configured endpoints the cluster no longer has: after a member is
// removed (and maybe replaced at another address), ETCD_ENDPOINTS still names
// it. Calls already avoid it (etcd-members.ts holds out a member that does not
// answer); this only tells the operator which entry to update. An endpoint is
// known by the member that answered on it (a proxy, a load balancer or a DNS name
// in front of a member is not that member's advertised URL); one that never
// answered is compared by scheme, host and port with the advertised client URLs.

const origin = (url: string): string => {
  try {
    return new URL(url).origin;
  } catch {
    return url;
  }
};

/**
 * The endpoints whose member is no longer in the cluster: the member that last answered on it
 * left, or (never answered) no member advertises it as a client URL.
 */
export function goneEndpoints(
  endpoints: string[],
  members: { ID: string; clientURLs: string[] }[],
  answeredBy: ReadonlyMap<string, string>,
): string[] {
  const ids = new Set(members.map((m) => m.ID));
  const advertised = new Set(members.flatMap((m) => m.clientURLs.map(origin)));
  return endpoints.filter((e) => {
    const id = answeredBy.get(e);
    return id === undefined ? !advertised.has(origin(e)) : !ids.has(id);
  });
}
