/**
 * Go's regexp Expand: ${name}, $name, ${1} and $1 from the match; $$ is a dollar; a "$" not
 * followed by a name stays as it is. A name is the longest run of letters, digits and "_"; it is
 * a group number only when it is decimal without a leading zero ("$01" names no group), as in Go.
 */
export function expandTemplate(template: string, match: RegExpExecArray): string {
  return template.replace(/\$(\$|\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/gu, (_all, dollar: string, braced?: string, bare?: string) => {
    if (dollar === "$") return "$";
    const name = braced ?? bare ?? "";
    const value = /^(0|[1-9][0-9]*)$/.test(name) ? match[Number(name)] : match.groups?.[name];
    return value ?? "";
  });
}

/** The first match of `re` (no "g" flag) replaced by the template expanded as above; String.replace would read "${name}" literally. */
export function replaceFirst(text: string, re: RegExp, template: string): string {
  const m = re.exec(text);
  return m ? text.slice(0, m.index) + expandTemplate(template, m) + text.slice(m.index + m[0].length) : text;
}

/** The group names and numbers `template` refers to, as expandTemplate reads them ("$$" refers to none). */
export function templateGroups(template: string): string[] {
  const groups: string[] = [];
  for (const m of template.matchAll(/\$(\$|\{([\p{L}\p{Nd}_]+)\}|([\p{L}\p{Nd}_]+))/gu)) if (m[1] !== "$") groups.push(m[2] ?? m[3]);
  return groups;
}
