package dev.outboard.api;

import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.function.Supplier;
import org.apache.pekko.http.javadsl.server.Directives;
import org.apache.pekko.http.javadsl.server.Route;

/**
 * The one check of every endpoint's query string: a parameter the endpoint does not take, or one
 * given twice, is a 400 naming it and the ones the endpoint takes (instead of being ignored, which
 * hides a client's typo such as {@code ?stauts=running}). Endpoints still read their values with
 * pekko-http's {@code parameterOptional}.
 */
public final class QueryParams {
  private QueryParams() {}

  /**
   * Runs {@code inner} if the query names only parameters of {@code accepted}, each at most once.
   */
  public static Route only(List<String> accepted, Supplier<Route> inner) {
    return Directives.parameterList(
        params -> {
          check(accepted, params);
          return inner.get();
        });
  }

  /** For endpoints that take no query parameters. */
  public static Route none(Supplier<Route> inner) {
    return only(List.of(), inner);
  }

  static void check(List<String> accepted, List<Map.Entry<String, String>> params) {
    Set<String> seen = new HashSet<>();
    for (Map.Entry<String, String> p : params) {
      String name = p.getKey();
      if (!accepted.contains(name)) {
        throw ApiError.badRequest(
            "unknown query parameter '"
                + name
                + "'; "
                + (accepted.isEmpty()
                    ? "this endpoint takes none"
                    : "this endpoint takes " + String.join(", ", accepted)));
      }
      if (!seen.add(name))
        throw ApiError.badRequest("query parameter '" + name + "' is given more than once");
    }
  }
}
