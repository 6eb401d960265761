package dev.outboard.testing;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.util.ArrayList;
import java.util.List;

/** Free TCP ports on the loopback interface, for nodes started by tests. */
public final class Ports {
  private Ports() {}

  public static int free() {
    return free(1)[0];
  }

  /** {@code n} distinct free ports: all sockets are held open until every port is chosen. */
  public static int[] free(int n) {
    List<ServerSocket> sockets = new ArrayList<>(n);
    try {
      for (int i = 0; i < n; i++)
        sockets.add(new ServerSocket(0, 1, InetAddress.getLoopbackAddress()));
      return sockets.stream().mapToInt(ServerSocket::getLocalPort).toArray();
    } catch (IOException e) {
      throw new UncheckedIOException("no free loopback port", e);
    } finally {
      for (ServerSocket s : sockets) {
        try {
          s.close();
        } catch (IOException ignored) {
          // the port is released either way
        }
      }
    }
  }
}
